"""A wasi:http 0.2 "hello" component written in Python, built by componentize-py.

For any request it answers 200 with the body "<greeting> from python <path-with-query>",
where <greeting> is the GREETING environment variable if set, else "hello".
The world it targets (test-programs/wit/world.wit) is wasi:http/proxy plus
wasi:cli/environment. The environment is read per request through
wasi:cli/environment (os.environ would be the one captured when the
component was pre-initialised at build time).
"""

from wit_world import exports
from wit_world.imports import environment
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok


def greeting() -> str:
    for key, value in environment.get_environment():
        if key == "GREETING":
            return value
    return "hello"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        body_bytes = f"{greeting()} from python {path}".encode("utf-8")

        response = OutgoingResponse(
            Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
        )
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))

        with body.write() as stream:
            # blocking_write_and_flush takes at most 4096 bytes per call.
            for i in range(0, len(body_bytes), 4096):
                stream.blocking_write_and_flush(body_bytes[i : i + 4096])
        OutgoingBody.finish(body, None)
