"""``python -m histosynth``: the ``histosynth`` command, so launchers that take a module (``torchrun -m``) can run it."""

from histosynth.cli import main

main()
