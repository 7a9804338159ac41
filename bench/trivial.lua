-- trivial.lua - serves bench/trivial_app.lua on the port given, until TERM.
local server, host = require "server", require "host"
local srv = server.start{module = "trivial_app", host = "127.0.0.1", port = tonumber(arg[1]) or 0}
io.stdout:write(srv.port, "\n")
io.stdout:flush()
host.wait()
srv:stop()
