-- trivial_app.lua - the trivial Lua route the host is measured with.
return {
  routes = {
    {"GET", "/hello", function() return 200, {["content-type"] = "text/plain"}, "ok" end},
  },
}
