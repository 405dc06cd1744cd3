"""Print `make mutation`'s last line from mutmut's statistics: the share of mutants the fast
tests detect (killed, or timed out: a mutant that hangs is caught too). Exits 1 below 90%."""

import json
import sys
from pathlib import Path

stats = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())
detected = stats["killed"] + stats["timeout"]
total = stats["total"]
score = 100.0 * detected / total if total else 0.0
print(f"survived {stats['survived']}, untested {stats['no_tests']}; the survivors are listed, with why each "
      "is equivalent, in docs/MUTATION.md (`.venv/bin/mutmut results` shows them)")
print(f"mutation score: {score:.1f}% (killed {detected} of {total})")
sys.exit(0 if score >= 90.0 else 1)
