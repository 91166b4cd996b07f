"""backscore pipelines: the stream logic, plain Python, testable without Ray.

Shared vocabulary at the top: :mod:`~pipelines.frames` (what flows between stages),
:mod:`~pipelines.options` (what users choose), :mod:`~pipelines.errors` (what goes wrong, and how
every front end reports it), :mod:`~pipelines.clock`, :mod:`~pipelines.aio`,
:mod:`~pipelines.progress`. Then one package per concern: ``media`` (files in and out),
``analysis`` (windows -> affect -> mood, shared by both paths), ``offline`` (the score job),
``live`` (a live session), ``library`` (music libraries and ranking), ``training`` (the learned
models), ``cli`` (the ``backscore`` command) and ``devtools`` (benchmarks, synthetic videos).
"""
