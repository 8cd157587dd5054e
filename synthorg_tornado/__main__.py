from synthorg_tornado.cli import main

raise SystemExit(main())
