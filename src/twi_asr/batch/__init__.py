"""The batch runner behind ``twi-asr batch`` and ``twi-asr eval``.

One job per module, in the order data flows:

- :mod:`.sources`: SRC specs (folders, globs, files, ``s3://`` prefixes, manifests) -> inputs.
- :mod:`.references`: reference texts from a TSV/CSV file, matched to inputs.
- :mod:`.ledger`: what is already done (by path and content hash), so reruns resume.
- :mod:`.output`: where results go (a local folder or ``s3://``), atomically.
- :mod:`.dispatch`: many servers, many requests in flight, failover when one dies.
- :mod:`.runner`: plans the run, drives the local engine or the servers, writes, records.
- :mod:`.report`: per-file records, WER/CER, gates, the JSON report, JUnit XML, the summary.
- :mod:`.progress`: a rich bar on a terminal, periodic plain lines in CI logs.

Nothing here imports torch, numpy, httpx, boto3 or docker at module level.
"""

from __future__ import annotations
