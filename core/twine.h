/* twine.h -- everything: include this one header.
 *
 * Link with -ltwine and one backend library after it (-ltwine-epoll,
 * -ltwine-poll, -ltwine-select, -ltwine-kqueue or -ltwine-default), or use
 * `pkg-config --cflags --libs twine` (the platform's best backend) or
 * `pkg-config --libs twine-poll` (a chosen one).  See doc/backends.md. */
#ifndef TWINE_H
#define TWINE_H

#define TWINE_VERSION_MAJOR 0
#define TWINE_VERSION_MINOR 1
#define TWINE_VERSION_PATCH 0
#define TWINE_VERSION "0.1.0"

#include "tw_error.h"
#include "tw_log.h"
#include "tw_reactor.h"
#include "tw_deferred.h"
#include "tw_task.h"
#include "tw_thread.h"
#include "tw_testing.h"
#include "tw_transport.h"
#include "tw_tcp.h"
#include "tw_string_transport.h"
#include "tw_loopback.h"
#include "tw_wire.h"
#include "tw_basic.h"
#include "tw_chat.h"
#include "tw_policies.h"
#include "tw_portforward.h"
#include "tw_factory.h"
#include "tw_endpoint.h"
#include "tw_process.h"

#endif
