import os
import sys

can_import_matplotlib = True #Silently allow matplotlib to be ignored
try:
    import matplotlib
    matplotlib.use('Agg')
except ImportError:
    can_import_matplotlib = False
    pass

import os
value = os.environ.get('NIPYPE_NO_ET', None)
if value is None:
    # disable ET for any submitted job
    os.environ['NIPYPE_NO_ET'] = "1"
from nipype import config, logging

from nipype.utils.filemanip import loadpkl, savepkl
from socket import gethostname
from traceback import format_exception
info = None
pklfile = '/work/wt/slurm/tmp3vld72x8/SLURM/work/demo_wf/batch/node_20261202_043829_demo_wf.group_analysis_wf_resample.pklz'
batchdir = '/work/wt/slurm/tmp3vld72x8/SLURM/work/demo_wf/batch'
from nipype.utils.filemanip import loadpkl, savepkl
try:
    from collections import OrderedDict
    config_dict={'logging': {'workflow_level': 'INFO', 'utils_level': 'INFO', 'interface_level': 'INFO', 'log_to_file': 'false', 'log_directory': '/root', 'log_size': '16384000', 'log_rotate': '4'}, 'execution': {'create_report': False, 'crashdump_dir': '/work/wt/slurm/tmp3vld72x8/SLURM/work/crash', 'hash_method': 'timestamp', 'job_finished_timeout': '5', 'keep_inputs': 'false', 'local_hash_check': 'true', 'matplotlib_backend': 'Agg', 'plugin': 'Linear', 'remove_node_directories': 'false', 'remove_unnecessary_outputs': False, 'try_hard_link_datasink': 'true', 'single_thread_matlab': 'true', 'crashfile_format': 'txt', 'stop_on_first_crash': True, 'stop_on_first_rerun': 'false', 'use_relative_paths': 'false', 'stop_on_unknown_version': 'false', 'write_provenance': 'false', 'parameterize_dirs': 'true', 'poll_sleep_duration': 0.2, 'xvfb_max_wait': '10', 'check_version': 'true'}, 'monitoring': {'enabled': 'false', 'sample_frequency': '1', 'summary_append': 'true'}, 'check': {'interval': '1209600'}}
    config.update_config(config_dict)
    ## Only configure matplotlib if it was successfully imported,
    ## matplotlib is an optional component to nipype
    if can_import_matplotlib:
        config.update_matplotlib()
    logging.update_logging(config)
    traceback=None
    cwd = os.getcwd()
    info = loadpkl(pklfile)
    result = info['node'].run(updatehash=info['updatehash'])
except Exception as e:
    etype, eval, etr = sys.exc_info()
    traceback = format_exception(etype,eval,etr)
    if info is None or not os.path.exists(info['node'].output_dir()):
        result = None
        resultsfile = os.path.join(batchdir, 'crashdump_20261202_043829_demo_wf.group_analysis_wf_resample.pklz')
    else:
        result = info['node'].result
        resultsfile = os.path.join(info['node'].output_dir(),
                               'result_%s.pklz'%info['node'].name)

    savepkl(resultsfile, dict(result=result, hostname=gethostname(),
                              traceback=traceback))
