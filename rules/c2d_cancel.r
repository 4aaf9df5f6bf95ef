# Cancel a task (id or task collection): a queued task never runs, a running one is stopped.
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance -F c2d_cancel.r "*task='20261122T020304Z-3f9a1c'"
main { c2d_cancel(*task) }
INPUT *task="20261122T020304Z-3f9a1c"
OUTPUT ruleExecOut
