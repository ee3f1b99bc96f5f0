"""``python -m vaelab ...`` runs the command line (also how torchrun launches it:
``torchrun --nproc-per-node 2 -m vaelab train ...``)."""
from vaelab.cli import main

main()
