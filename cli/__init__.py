"""The `sable` command line, on top of the house: the registry (`cli.main`) and the operator
commands that run or change the services (serve, dev, admin, db, discharger keys). It imports
the services; nothing below imports it. The holder and admin commands that talk to running
services over HTTP live in `clients.cli`, which knows no service code."""
