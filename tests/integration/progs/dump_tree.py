"""Print the tree below argv[1] in tctlib.dump_tree's format (the oracle runs this inside its
mount namespace, before the tmpfs goes away)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tctlib  # noqa: E402

sys.stdout.write(tctlib.dump_tree(sys.argv[1]))
