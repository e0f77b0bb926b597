"""Modules that run inside the sandbox's own processes (template, zygote, worker).

They run under ``python -I -S`` with this directory first on ``sys.path`` and import each other
by bare name (``import frames``), so they are stdlib only and never import ``rlm_graph``. The
host imports only the ones it shares with them: :mod:`.frames` and :mod:`.tables`.
"""
