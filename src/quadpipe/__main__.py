from quadpipe.cli import main

raise SystemExit(main())
