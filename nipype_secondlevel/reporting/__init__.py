"""What a person looks at: figures, the HTML report and the provenance it shows."""
