# Resume a failed or cancelled task (id or task collection) in the same task collection: only
# images without a complete prediction of the task are classified; queued like c2d_submit.
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance -F c2d_resume.r "*task='20261122T020304Z-3f9a1c'"
main { c2d_resume(*task) }
INPUT *task="20261122T020304Z-3f9a1c"
OUTPUT ruleExecOut
