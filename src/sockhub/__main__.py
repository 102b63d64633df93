from sockhub.cli import main

raise SystemExit(main())
