"""``python -m musicvae_course.train``: see ``train.cli``."""

from .cli import main

raise SystemExit(main())
