"""The application layer: what the commands do with run directories.

- :mod:`~flowmatch.app.sample`: ``flowmatch sample`` (samples, interpolants).
- :mod:`~flowmatch.app.evaluate`: ``flowmatch eval``.
- :mod:`~flowmatch.app.reflow`: ``flowmatch reflow`` (reflow, one-step distillation).
- :mod:`~flowmatch.app.likelihood`: ``flowmatch likelihood``.
- :mod:`~flowmatch.app.demo`: ``flowmatch demo``.

It builds on the library (models, samplers, the trainer) and the CLI (:mod:`flowmatch.cli`)
is a thin layer over it; nothing below imports it.
"""
