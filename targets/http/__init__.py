"""The targets' HTTP/1.1 server and the base of the HTTP-based targets."""
