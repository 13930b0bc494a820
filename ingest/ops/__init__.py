"""Operating the service: one implementation of every operator action, two doors.

`ingestctl` (`ingest.ops.cli`) and the console (`ingest.console`) call the same
functions here (kill switch, replay, DLQ, accounts), and each of them writes the same audit
row, whichever door the operator came through.
"""
