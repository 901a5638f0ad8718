import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command starts
    print("nipype-secondlevel: interrupted; rerun the same command to resume", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
