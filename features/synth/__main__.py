from features.synth.cli import main

raise SystemExit(main())
