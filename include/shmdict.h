/* SPDX-License-Identifier: MIT */
/* shmdict: Redis-like data in named shared-memory segments. The umbrella header. */
#ifndef SHMD_SHMDICT_H
#define SHMD_SHMDICT_H

#include "shmdict/error.h"
#include "shmdict/ptr.h"
#include "shmdict/store.h"
#include "shmdict/tx.h"
#include "shmdict/alloc.h"
#include "shmdict/blob.h"
#include "shmdict/array.h"
#include "shmdict/list.h"
#include "shmdict/hash.h"
#include "shmdict/rbtree.h"
#include "shmdict/btree.h"
#include "shmdict/kv.h"
#include "shmdict/persist.h"

#endif /* SHMD_SHMDICT_H */
