"""gRPC: unary Echo with deadlines, the Subscribe stream with resume, and bidi Chat.

Not ``grpc.py``: Locust imports a locustfile under its file name and puts its folder first on
``sys.path``, so a ``grpc.py`` here would replace the ``grpc`` package for everything loaded
after it (this file, and ``all.py`` next to it).

    locust -f locustfiles/grpc_lab.py --host 127.0.0.1:8083
    locust -f locustfiles/grpc_lab.py --grpc-target 127.0.0.1:8083,127.0.0.1:9083   # round_robin
"""

from wirelab.users import GrpcUser


class Grpc(GrpcUser):
    """Users share HTTP/2 channels, 100 streams each (``--grpc-streams-per-channel``); see
    ``wirelab.users.GrpcUser``."""
