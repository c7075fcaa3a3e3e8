"""The ``knnstream`` command line: ``main`` the commands, ``flags`` the flags of the settings
classes, ``models``, ``topics`` and ``backfill`` their subcommands."""
