import sys

from sinktrain.cli import main

sys.exit(main())
