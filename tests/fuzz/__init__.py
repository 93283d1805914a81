"""Structure-aware fuzzing of the command path: hostile records in, an answer for every one out.

``generators`` makes the records, ``harness`` feeds them to ``decode_command`` and
``PartitionProcessor.process`` and checks what comes out; ``python -m tests.fuzz`` is the long
form and ``test_fuzz`` the short one ``make test`` runs.
"""
