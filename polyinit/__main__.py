import sys

from polyinit.cli import main

sys.exit(main())
