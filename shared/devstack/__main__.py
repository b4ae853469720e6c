"""``python -m eventpipe.devstack up|down|status|ports [component...]`` (scripts/stack.sh calls it)."""

import sys

from eventpipe.devstack.manager import run_command

sys.exit(run_command(sys.argv[1:]))
