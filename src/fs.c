/*
 * fs.c - the Lua `fs` binding: whole-file reads, atomic and durable writes,
 * appends of one line, directories and safe file names.
 *
 * Expected failures (a missing file, a full disk) return nil, "path:
 * reason", errno, as io.open does. What must be freed while Lua may raise
 * (a descriptor, a read buffer, a directory listing) lives in a box, a
 * to-be-closed userdata whose __close and __gc release it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"

#define FS_BOX_MT "fs.box"
#define FS_SAFE_NAME_MAX 100

typedef struct fs_box {
  int fd;
  char *buf;
  struct dirent **names;
  int nnames;
} fs_box;

/* Releases what the box holds; safe to call again. */
static void fs_box_release(fs_box *b) {
  if (b->fd >= 0) close(b->fd);
  b->fd = -1;
  free(b->buf);
  b->buf = NULL;
  for (int i = 0; i < b->nnames; i++) free(b->names[i]);
  free(b->names);
  b->names = NULL;
  b->nnames = 0;
}

/* __gc and __close of the box. */
static int fs_box_close(lua_State *L) {
  fs_box_release(luaL_checkudata(L, 1, FS_BOX_MT));
  return 0;
}

/* Pushes an empty box, marked to be closed when the calling function ends. */
static fs_box *fs_box_push(lua_State *L) {
  fs_box *b = lua_newuserdatauv(L, sizeof *b, 0);     /* box */
  b->fd = -1;
  b->buf = NULL;
  b->names = NULL;
  b->nnames = 0;
  luaL_setmetatable(L, FS_BOX_MT);
  lua_toclose(L, -1);
  return b;
}

/* Pushes nil, "path: reason", errno and returns 3. */
static int fs_fail(lua_State *L, const char *path, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

/* Writes all of data to fd, retrying short writes. 0, or -1 with errno. */
static int fs_write_all(int fd, const char *data, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    data += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsyncs the directory that holds path, so a rename or a new name in it
 * survives a crash. 0, or -1 with errno. */
static int fs_sync_parent(const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

/* Opens a new file beside path (mode 0666 less umask) named
 * ".NAME.tmp-...", its name in tmp. The descriptor, or -1 with errno. */
static int fs_open_temp(const char *path, char *tmp, size_t tmplen) {
  static unsigned long counter;
  const char *slash = strrchr(path, '/');
  int dirlen = slash ? (int)(slash - path + 1) : 0;
  for (int attempt = 0; attempt < 100; attempt++) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    int len = snprintf(tmp, tmplen, "%.*s.%s.tmp-%d-%lu-%lx", dirlen, path, path + dirlen,
                       (int)getpid(), n, (unsigned long)ts.tv_nsec);
    if (len < 0 || (size_t)len >= tmplen) return errno = ENAMETOOLONG, -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

/* Replaces path with data so that a reader, or the disk after a crash,
 * sees the old content or the new one, never a mix. 0, or -1 with errno. */
static int fs_write_atomic(const char *path, const char *data, size_t n) {
  char tmp[PATH_MAX];
  int fd = fs_open_temp(path, tmp, sizeof tmp);
  if (fd < 0) return -1;
  if (fs_write_all(fd, data, n) < 0 || fsync(fd) < 0) {
    int saved = errno;
    close(fd);
    unlink(tmp);
    return errno = saved, -1;
  }
  if (close(fd) < 0 || rename(tmp, path) < 0) {
    int saved = errno;
    unlink(tmp);
    return errno = saved, -1;
  }
  return fs_sync_parent(path);
}

/* fs.read(path) -> the whole content, or nil, message, errno. */
static int fs_lua_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  fs_box *b = fs_box_push(L);                         /* path box */
  struct stat st;
  b->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (b->fd < 0 || fstat(b->fd, &st) < 0) return fs_fail(L, path, errno);
  if (S_ISDIR(st.st_mode)) return fs_fail(L, path, EISDIR);
  /* st_size is a hint: files under /proc say 0, and a file may grow */
  size_t cap = (size_t)st.st_size + 1, len = 0;
  if (cap < 4096) cap = 4096;
  if (!(b->buf = malloc(cap))) return fs_fail(L, path, ENOMEM);
  for (;;) {
    if (len == cap) {
      char *p = realloc(b->buf, cap * 2);
      if (!p) return fs_fail(L, path, ENOMEM);
      b->buf = p, cap *= 2;
    }
    ssize_t r = read(b->fd, b->buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fs_fail(L, path, errno);
    if (r == 0) break;
    len += (size_t)r;
  }
  close(b->fd);
  b->fd = -1;
  lua_pushlstring(L, b->buf, len);                    /* path box content */
  return 1;
}

/* fs.write(path, data) -> true, or nil, message, errno. Atomic: a temporary
 * file in the same directory, written, fsynced and renamed over path, then
 * the directory fsynced. */
static int fs_lua_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (fs_write_atomic(path, data, n) < 0) return fs_fail(L, path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* fs.append_line(path, line) -> true, or nil, message, errno. One write of
 * line .. "\n" with O_APPEND, so lines from several threads or processes
 * never interleave, then fsync. Creates the file (and fsyncs its
 * directory) when missing. */
static int fs_lua_append_line(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t n;
  const char *line = luaL_checklstring(L, 2, &n);
  int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  int created = 0;
  if (fd < 0 && errno == ENOENT) {
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    created = 1;
  }
  if (fd < 0) return fs_fail(L, path, errno);
  struct iovec iov[2] = {{(void *)(uintptr_t)line, n}, {(void *)(uintptr_t)"\n", 1}};
  size_t total = n + 1, done = 0;
  int err = 0;
  while (done < total) {
    ssize_t w = writev(fd, iov, 2);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      err = errno;
      break;
    }
    done += (size_t)w;
    if (done < total) {  /* a short write: finish what is left in order */
      size_t skip = (size_t)w;
      for (int i = 0; i < 2; i++) {
        size_t take = skip < iov[i].iov_len ? skip : iov[i].iov_len;
        iov[i].iov_base = (char *)iov[i].iov_base + take;
        iov[i].iov_len -= take;
        skip -= take;
      }
    }
  }
  if (!err && fsync(fd) < 0) err = errno;
  if (close(fd) < 0 && !err) err = errno;
  if (!err && created && fs_sync_parent(path) < 0) err = errno;
  if (err) return fs_fail(L, path, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* fs.mkdir(path) -> true (also when it exists), or nil, message, errno.
 * Creates missing parents. */
static int fs_lua_mkdir(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  char p[PATH_MAX];
  if (n == 0) return fs_fail(L, path, ENOENT);
  if (n >= sizeof p) return fs_fail(L, path, ENAMETOOLONG);
  memcpy(p, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    if (p[i - 1] == '/') continue;
    char saved = p[i];
    p[i] = '\0';
    if (mkdir(p, 0777) < 0 && errno != EEXIST) return fs_fail(L, path, errno);
    p[i] = saved;
  }
  struct stat st;
  if (stat(path, &st) < 0) return fs_fail(L, path, errno);
  if (!S_ISDIR(st.st_mode)) return fs_fail(L, path, ENOTDIR);
  lua_pushboolean(L, 1);
  return 1;
}

/* scandir filter: every entry but "." and "..". */
static int fs_not_dots(const struct dirent *e) {
  return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

/* scandir order: bytewise, whatever the locale. */
static int fs_by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

/* fs.list(dir) -> names sorted bytewise (no "." and ".."), or nil,
 * message, errno. */
static int fs_lua_list(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  fs_box *b = fs_box_push(L);                         /* dir box */
  int n = scandir(dir, &b->names, fs_not_dots, fs_by_name);
  if (n < 0) {
    b->names = NULL;
    return fs_fail(L, dir, errno);
  }
  b->nnames = n;
  lua_createtable(L, n, 0);                           /* dir box names */
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, b->names[i]->d_name);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* fs.exists(path) -> boolean (following symbolic links). */
static int fs_lua_exists(lua_State *L) {
  struct stat st;
  lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
  return 1;
}

/* fs.stat(path) -> {size, mtime (ms), type = "file" | "dir" | "other"}, or
 * nil, message, errno. */
static int fs_lua_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) < 0) return fs_fail(L, path, errno);
  lua_createtable(L, 0, 3);                           /* info */
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
  lua_setfield(L, -2, "mtime");
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
  lua_setfield(L, -2, "type");
  return 1;
}

/* fs.remove(path) -> true (also when already absent), or nil, message,
 * errno. Removes a file or an empty directory. */
static int fs_lua_remove(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (remove(path) < 0 && errno != ENOENT) return fs_fail(L, path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* fs.safe_name(s) -> a file name of [A-Za-z0-9._-] only: every run of
 * other bytes becomes one "_", leading dots are dropped, at most 100
 * bytes, and "_" when nothing is left. Never ".", ".." or empty. */
static int fs_lua_safe_name(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char out[FS_SAFE_NAME_MAX];
  size_t o = 0;
  int in_run = 0;
  for (size_t i = 0; i < n && o < sizeof out; i++) {
    unsigned char c = (unsigned char)s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    if (ok && c == '.' && o == 0) continue;
    if (ok) {
      out[o++] = (char)c;
      in_run = 0;
    } else if (!in_run) {
      out[o++] = '_';
      in_run = 1;
    }
  }
  if (o == 0) out[o++] = '_';
  lua_pushlstring(L, out, o);
  return 1;
}

int luaopen_fs(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"read", fs_lua_read},     {"write", fs_lua_write},   {"append_line", fs_lua_append_line},
      {"mkdir", fs_lua_mkdir},   {"list", fs_lua_list},     {"exists", fs_lua_exists},
      {"stat", fs_lua_stat},     {"remove", fs_lua_remove}, {"safe_name", fs_lua_safe_name},
      {NULL, NULL}};
  if (luaL_newmetatable(L, FS_BOX_MT)) {              /* mt */
    lua_pushcfunction(L, fs_box_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, fs_box_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
