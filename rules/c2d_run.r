# Run a compute_to_data task now; prints the task id, state, task collection and report path.
# The config is a JSON data object (see config/examples); as any iRODS user:
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance -F c2d_run.r "*config='/tempZone/home/alice/task_config.json'"
main { c2d_run(*config) }
INPUT *config="/tempZone/home/alice/task_config.json"
OUTPUT ruleExecOut
