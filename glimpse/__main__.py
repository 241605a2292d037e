from glimpse.cli.main import main

# Guarded: a spawned child process (the schema migration) imports this module again.
if __name__ == "__main__":
    raise SystemExit(main())
