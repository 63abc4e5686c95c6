"""A client generated from the owner API's document, used for real.

scripts/api-contract.sh generates the package `pdpp_client` with
openapi-python-client into the current directory and runs this against the
server it started (PDPP_BASE, PDPP_TOKEN): it creates a demo connection,
waits for its first sync, reads a page of records and deletes the
connection, all through the generated functions and models. Any surprise
(an undeclared status, a body the models cannot read) fails it.
"""

import os
import sys
import time

sys.path.insert(0, os.getcwd())

from pdpp_client import AuthenticatedClient  # noqa: E402
from pdpp_client.api.catalog import get_connector  # noqa: E402
from pdpp_client.api.connections import create_connection, delete_connection, revoke_connection  # noqa: E402
from pdpp_client.api.records import list_records  # noqa: E402
from pdpp_client.api.runs import get_run  # noqa: E402
from pdpp_client.models import (  # noqa: E402
    ConnectorView,
    CreateBody,
    CreateBodySettingsType0,
    Created,
    DeleteReport,
    ErrorBody,
    RecordPage,
    Revoked,
    RunDetail,
)


def expect(value, kind):
    if not isinstance(value, kind):
        sys.exit(f"contract client: expected {kind.__name__}, got {value!r}")
    return value


client = AuthenticatedClient(
    base_url=os.environ["PDPP_BASE"], token=os.environ["PDPP_TOKEN"], raise_on_unexpected_status=True
)

connector = expect(get_connector.sync("demo", client=client), ConnectorView)
missing = expect(get_connector.sync("no-such-connector", client=client), ErrorBody)
assert missing.code == "not_found", missing

settings = CreateBodySettingsType0.from_dict({"contacts": 3, "events": 2})
created = expect(
    create_connection.sync(client=client, body=CreateBody(connector_id="demo", display_name="Client check", settings=settings)),
    Created,
)
connection_id = created.connection.connection_id
run_id = created.first_sync.run_id

deadline = time.monotonic() + 60
while True:
    detail = expect(get_run.sync(run_id, client=client), RunDetail)
    status = detail.run.status.value
    if status != "running":
        break
    if time.monotonic() > deadline:
        sys.exit("contract client: the first sync did not finish in 60 s")
    time.sleep(0.2)
assert status == "succeeded", detail.run

page = expect(list_records.sync(client=client, connection_id=connection_id, stream="contacts", limit=2), RecordPage)
assert len(page.records) == 2 and isinstance(page.next_cursor, str), page
rest = expect(
    list_records.sync(client=client, connection_id=connection_id, stream="contacts", cursor=page.next_cursor),
    RecordPage,
)
assert len(rest.records) == 1 and rest.next_cursor is None, rest

expect(revoke_connection.sync(connection_id, client=client), Revoked)
expect(delete_connection.sync(connection_id, client=client), DeleteReport)
print(f"generated client: {connector.connector_id} connection {connection_id}, run {run_id}, 3 records read, deleted")
