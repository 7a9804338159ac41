-- reload_server.lua - serves the `app` module of the --lua directory until
-- SIGTERM, for tests/e2e/reload_test.lua: `skudemo --lua DIR run
-- tests/lua/reload_server.lua PORT`. SIGHUP reloads meanwhile.
local server, host = require "server", require "host"

local srv = assert(server.start{module = "app", host = "127.0.0.1", port = tonumber(arg[1]), threads = 2})
print("listening on " .. srv.port)
io.stdout:flush()
host.wait()
srv:stop()
