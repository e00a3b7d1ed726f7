"""`pointex`, the command-line client for people: tables, colours and a live `watch`.

The SDK (`pointex.client`, `pointex.v1`) installs with grpcio and protobuf only; this package
needs the `cli` extra (`pip install 'pointex-client[cli]'`), which `pointex.cli.main` checks
before importing anything that uses it.
"""
