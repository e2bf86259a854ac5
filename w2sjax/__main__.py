from w2sjax.cli import main

raise SystemExit(main())
