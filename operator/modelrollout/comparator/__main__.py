"""`python -m modelrollout.comparator`: the same as `modelrollout comparator`."""

from modelrollout.comparator.serve import main

raise SystemExit(main())
