# State, timings, progress, error and report of a task, by task id or task collection path.
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance -F c2d_status.r "*task='20261122T020304Z-3f9a1c'"
main { c2d_status(*task) }
INPUT *task="20261122T020304Z-3f9a1c"
OUTPUT ruleExecOut
