"""The researcher's side: follow tasks from a laptop or a login node (``c2d submit/status/
list/wait/cancel/report``) against a zone (python-irodsclient) or a LocalGrid (``--local``)."""

from compute_to_data.client.tasks import Submission, TaskClient, WaitResult, parse_since

__all__ = ["Submission", "TaskClient", "WaitResult", "parse_since"]
