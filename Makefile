# skudemo - a C core that hosts the seller's Lua scripts.
PREFIX  ?= /usr/local
DESTDIR ?=
PKGS     = lua5.4 libmicrohttpd libcurl sqlite3 libcrypto
CJSON_A  = $(firstword $(wildcard /usr/lib/*/liblua5.4-cjson.a /usr/lib/liblua5.4-cjson.a))

CC      ?= cc
OPT     ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wundef -Wvla -Wwrite-strings -Wnull-dereference \
           -Wdouble-promotion -Wno-unused-parameter
CFLAGS  += -std=c11 $(OPT) $(WARN) -pthread -fno-strict-aliasing
CPPFLAGS+= -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) lua5.4-cjson)
LDLIBS  += $(CJSON_A) $(shell pkg-config --libs $(PKGS)) -lpthread -lm

OBJDIR  ?= obj
BIN     ?= skudemo
SRC      = $(wildcard src/*.c)
OBJ      = $(SRC:src/%.c=$(OBJDIR)/%.o)
HDR      = $(wildcard src/*.h)
UNIT     = $(wildcard tests/unit/*_test.c)

DEBIAN_PKGS = build-essential pkg-config liblua5.4-dev lua-cjson-dev libmicrohttpd-dev \
              libcurl4-openssl-dev libsqlite3-dev libssl-dev sqlite3 ca-certificates curl \
              wrk python3 python3-fastapi python3-uvicorn nginx libnginx-mod-http-lua \
              chromium chromium-driver valgrind

.PHONY: all deps test asan bench demo install clean unit
all: $(BIN)

$(BIN): $(OBJ)
	@echo "  LD  $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJ) $(LDLIBS)

$(OBJDIR)/%.o: src/%.c $(HDR) | $(OBJDIR)
	@echo "  CC  $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(OBJDIR):
	@mkdir -p $@

# unit tests link every object but main.o; each test file has its own main
$(OBJDIR)/unit/%: tests/unit/%.c $(filter-out $(OBJDIR)/main.o,$(OBJ)) $(HDR)
	@mkdir -p $(dir $@)
	@echo "  CC  $<"
	@$(CC) $(CPPFLAGS) -Isrc $(CFLAGS) -o $@ $< $(filter-out $(OBJDIR)/main.o,$(OBJ)) $(LDLIBS)

unit: $(UNIT:tests/unit/%.c=$(OBJDIR)/unit/%)

deps:
	@missing=""; for p in $(DEBIAN_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "all dependencies installed"; fi

test: $(BIN) unit
	@SKUDEMO_BIN=./$(BIN) UNIT_DIR=$(OBJDIR)/unit tests/run

asan:
	@$(MAKE) --no-print-directory OBJDIR=obj/asan BIN=skudemo-asan \
	  OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" test

bench: $(BIN)
	@bench/run

demo: deps $(BIN)
	@./$(BIN) run scripts/demo.lua

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/skudemo
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/skudemo
	cp -r lua scripts web $(DESTDIR)$(PREFIX)/share/skudemo/
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|@PREFIX@|$(PREFIX)|g' dist/skudemo.service.in > $(DESTDIR)$(PREFIX)/lib/systemd/system/skudemo.service

clean:
	rm -rf obj skudemo skudemo-asan tests/tmp
