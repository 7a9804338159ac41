/* fs.c - placeholder until the binding lands; raises on use. */
#include <lauxlib.h>
#include <lua.h>

#include "host.h"

int luaopen_fs(lua_State *L) { return luaL_error(L, "module 'fs' is not built yet"); }
