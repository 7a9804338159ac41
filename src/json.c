/* json.c - placeholder until the binding lands; raises on use. */
#include <lauxlib.h>
#include <lua.h>

#include "host.h"

int luaopen_json(lua_State *L) { return luaL_error(L, "module 'json' is not built yet"); }
