# Queue a compute_to_data task: the config is checked now, the task id is printed at once and the
# run is queued with the delay server (see it with iqstat; follow it with c2d_status.r).
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance -F c2d_submit.r "*config='/tempZone/home/alice/task_config.json'"
main { c2d_submit(*config) }
INPUT *config="/tempZone/home/alice/task_config.json"
OUTPUT ruleExecOut
