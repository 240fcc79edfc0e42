/* SPDX-License-Identifier: MIT */
/*
 * shmdict_core: the C part of the Python module `shmdict` (python/shmdict.py adds the helpers
 * written in Python). It wraps a store handle in the type Store and gives Python the calls where
 * speed matters: execute() (any keyspace command, Redis reply types back), and the typed fast paths
 * get/set/hget/hset/zrank, each one C call. Every call into the library runs with the GIL
 * released, so other Python threads run while a command waits for a lock or walks a big value;
 * arguments are converted to byte buffers (held by Python objects this call keeps referenced)
 * before the release, and replies to Python objects after it.
 *
 * Errors: a command's own error reply (WRONGTYPE, syntax, ...) raises shmdict.ResponseError with
 * Redis's text, as redis-py does; a failure of the library (a store that cannot be opened, a
 * corrupted store, no lane) raises shmdict.Error with args (message, status, status name).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "shmdict.h"

static PyObject *Error;         /* shmdict.Error */
static PyObject *ResponseError; /* shmdict.ResponseError(Error) */

/* Raises shmdict.Error for a negative status; returns NULL. */
static PyObject *raise_status(int rc, const char *what) {
  const char *detail = shmd_errdetail();
  PyObject *msg = *detail ? PyUnicode_FromFormat("%s: %s (%s)", what, shmd_strerror(rc), detail)
                          : PyUnicode_FromFormat("%s: %s", what, shmd_strerror(rc));
  if (msg == NULL)
    return NULL;
  PyObject *args = Py_BuildValue("(Nis)", msg, rc, shmd_err_name(rc));
  if (args != NULL) {
    PyErr_SetObject(Error, args);
    Py_DECREF(args);
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Arguments: bytes, bytearray, str (UTF-8), int and float (their decimal text, as redis-py). */

typedef struct argbuf_s {
  const char *ptr;
  Py_ssize_t len;
  PyObject *keep; /* a new reference that owns ptr (NULL when the argument itself does) */
} argbuf_t;

/* Converts `o`; the bytes stay valid while `o` (and buf->keep) live. Returns 0 or -1 with a
 * TypeError set. */
static int to_bytes(PyObject *o, argbuf_t *buf) {
  buf->keep = NULL;
  if (PyBytes_Check(o)) {
    buf->ptr = PyBytes_AS_STRING(o);
    buf->len = PyBytes_GET_SIZE(o);
    return 0;
  }
  if (PyUnicode_Check(o)) {
    buf->ptr = PyUnicode_AsUTF8AndSize(o, &buf->len);
    return buf->ptr ? 0 : -1;
  }
  if (PyByteArray_Check(o)) {
    /* A copy: a bytearray may be resized by another thread while the GIL is released. */
    buf->keep = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o));
  } else if (PyBool_Check(o)) {
    PyErr_SetString(PyExc_TypeError, "shmdict: a bool is not a valid argument (use an int or bytes)");
    return -1;
  } else if (PyLong_Check(o)) {
    PyObject *s = PyObject_Str(o);
    buf->keep = s ? PyUnicode_AsUTF8String(s) : NULL;
    Py_XDECREF(s);
  } else if (PyFloat_Check(o)) {
    PyObject *s = PyObject_Repr(o);
    buf->keep = s ? PyUnicode_AsUTF8String(s) : NULL;
    Py_XDECREF(s);
  } else {
    PyErr_Format(PyExc_TypeError, "shmdict: invalid argument of type %.100s (use bytes, str, int or float)",
                 Py_TYPE(o)->tp_name);
    return -1;
  }
  if (buf->keep == NULL)
    return -1;
  buf->ptr = PyBytes_AS_STRING(buf->keep);
  buf->len = PyBytes_GET_SIZE(buf->keep);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Replies: status and bulk -> bytes, integer -> int, nil -> None, array -> list; an error reply
 * at the top raises ResponseError, one inside an array becomes a ResponseError instance. */

static PyObject *reply_to_py(const shmd_reply_t *r, int top) {
  switch (r->type) {
  case SHMD_REPLY_STATUS:
  case SHMD_REPLY_BULK:
    return PyBytes_FromStringAndSize(r->str, (Py_ssize_t)r->len);
  case SHMD_REPLY_INTEGER:
    return PyLong_FromLongLong(r->integer);
  case SHMD_REPLY_NIL:
    Py_RETURN_NONE;
  case SHMD_REPLY_ERROR: {
    PyObject *text = PyUnicode_DecodeUTF8(r->str, (Py_ssize_t)r->len, "replace");
    if (text == NULL)
      return NULL;
    if (top) {
      PyErr_SetObject(ResponseError, text);
      Py_DECREF(text);
      return NULL;
    }
    PyObject *e = PyObject_CallOneArg(ResponseError, text);
    Py_DECREF(text);
    return e;
  }
  case SHMD_REPLY_ARRAY: {
    PyObject *list = PyList_New((Py_ssize_t)r->nelems);
    if (list == NULL)
      return NULL;
    for (size_t i = 0; i < r->nelems; i++) {
      PyObject *e = reply_to_py(&r->elems[i], 0);
      if (e == NULL) {
        Py_DECREF(list);
        return NULL;
      }
      PyList_SET_ITEM(list, (Py_ssize_t)i, e);
    }
    return list;
  }
  }
  PyErr_Format(Error, "shmdict: unknown reply type %d", (int)r->type);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* The Store type. */

typedef struct {
  PyObject_HEAD
  shmd_store_t *s;
  unsigned db;
} StoreObject;

static int store_live(StoreObject *self) {
  if (self->s == NULL) {
    PyErr_SetString(Error, "shmdict: the store is closed");
    return 0;
  }
  return 1;
}

static int Store_init(StoreObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"name", "dir", "db", "create", "first_segment_bytes", "segment_bytes",
                           "max_store_bytes", NULL};
  const char *name, *dir = NULL;
  unsigned db = 0;
  int create = 1;
  unsigned long long first = 0, seg = 0, max = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "s|zIpKKK:Store", kwlist, &name, &dir, &db, &create,
                                   &first, &seg, &max))
    return -1;
  if (db >= SHMD_KV_DATABASES) {
    PyErr_Format(PyExc_ValueError, "shmdict: db must be 0..%u", SHMD_KV_DATABASES - 1);
    return -1;
  }
  shmd_options_t o;
  shmd_options_init(&o);
  o.dir = dir;
  if (!create)
    o.flags |= SHMD_OPEN_NOCREATE;
  if (first)
    o.first_segment_bytes = first;
  if (seg)
    o.segment_bytes = seg;
  if (max)
    o.max_store_bytes = max;
  shmd_store_t *s = NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_open(name, &o, &s);
  Py_END_ALLOW_THREADS
  if (rc) {
    raise_status(rc, "shmd_open");
    return -1;
  }
  shmd_store_t *old = self->s;
  self->s = s;
  self->db = db;
  shmd_close(old);
  return 0;
}

static void Store_dealloc(StoreObject *self) {
  shmd_close(self->s);
  self->s = NULL;
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Store_close(StoreObject *self, PyObject *Py_UNUSED(ignored)) {
  shmd_store_t *s = self->s;
  self->s = NULL;
  shmd_close(s);
  Py_RETURN_NONE;
}

/* execute(*args): one keyspace command on the store's database. */
static PyObject *Store_execute(StoreObject *self, PyObject *args) {
  if (!store_live(self))
    return NULL;
  Py_ssize_t argc = PyTuple_GET_SIZE(args);
  if (argc == 0) {
    PyErr_SetString(PyExc_TypeError, "execute() needs a command name");
    return NULL;
  }
  argbuf_t small[8], *bufs = argc <= 8 ? small : PyMem_Calloc((size_t)argc, sizeof(argbuf_t));
  const char *vsmall[8], **argv = argc <= 8 ? vsmall : PyMem_Calloc((size_t)argc, sizeof(char *));
  size_t lsmall[8], *lens = argc <= 8 ? lsmall : PyMem_Calloc((size_t)argc, sizeof(size_t));
  PyObject *result = NULL;
  Py_ssize_t done = 0;
  if (bufs == NULL || argv == NULL || lens == NULL) {
    PyErr_NoMemory();
    goto out;
  }
  for (; done < argc; done++) {
    if (to_bytes(PyTuple_GET_ITEM(args, done), &bufs[done]))
      goto out;
    argv[done] = bufs[done].ptr;
    lens[done] = (size_t)bufs[done].len;
  }
  shmd_reply_t *reply = NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_kv_command_db(self->s, self->db, (int)argc, argv, lens, &reply);
  Py_END_ALLOW_THREADS
  if (rc) {
    raise_status(rc, "execute");
    goto out;
  }
  result = reply_to_py(reply, 1);
  shmd_reply_free(reply);
out:
  for (Py_ssize_t i = 0; i < done; i++)
    Py_XDECREF(bufs[i].keep);
  if (bufs != small)
    PyMem_Free(bufs);
  if (argv != vsmall)
    PyMem_Free(argv);
  if (lens != lsmall)
    PyMem_Free(lens);
  return result;
}

/* Copies a value out with a first try in a stack buffer, then in a bytes object of the exact
 * length (again if the value grew in between). `fetch` runs without the GIL. */
typedef int (*fetch_fn)(StoreObject *self, const argbuf_t *a, const argbuf_t *b, void *buf,
                        size_t cap, size_t *len);

static PyObject *fetch_value(StoreObject *self, const argbuf_t *a, const argbuf_t *b, fetch_fn fn,
                             const char *what) {
  char stack[512];
  size_t len = 0;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = fn(self, a, b, stack, sizeof stack, &len);
  Py_END_ALLOW_THREADS
  if (rc == 0)
    return PyBytes_FromStringAndSize(stack, (Py_ssize_t)len);
  while (rc == SHMD_ERANGE) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (out == NULL)
      return NULL;
    size_t cap = len;
    Py_BEGIN_ALLOW_THREADS
    rc = fn(self, a, b, PyBytes_AS_STRING(out), cap, &len);
    Py_END_ALLOW_THREADS
    if (rc == 0 && len == cap)
      return out;
    if (rc == 0) { /* it shrank meanwhile */
      _PyBytes_Resize(&out, (Py_ssize_t)len);
      return out;
    }
    Py_DECREF(out);
  }
  if (rc == SHMD_ENOTFOUND)
    Py_RETURN_NONE;
  if (rc == SHMD_EWRONGTYPE) {
    PyErr_SetString(ResponseError, "WRONGTYPE Operation against a key holding the wrong kind of value");
    return NULL;
  }
  return raise_status(rc, what);
}

static int fetch_get(StoreObject *self, const argbuf_t *a, const argbuf_t *b, void *buf, size_t cap,
                     size_t *len) {
  (void)b;
  return shmd_kv_get(self->s, self->db, a->ptr, (size_t)a->len, buf, cap, len);
}

static int fetch_hget(StoreObject *self, const argbuf_t *a, const argbuf_t *b, void *buf, size_t cap,
                      size_t *len) {
  return shmd_kv_hget(self->s, self->db, a->ptr, (size_t)a->len, b->ptr, (size_t)b->len, buf, cap, len);
}

/* get(key) -> bytes or None. */
static PyObject *Store_get(StoreObject *self, PyObject *key) {
  argbuf_t k;
  if (!store_live(self) || to_bytes(key, &k))
    return NULL;
  PyObject *r = fetch_value(self, &k, NULL, fetch_get, "get");
  Py_XDECREF(k.keep);
  return r;
}

/* hget(key, field) -> bytes or None. */
static PyObject *Store_hget(StoreObject *self, PyObject *const *args, Py_ssize_t nargs) {
  argbuf_t k, f;
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "hget(key, field)");
    return NULL;
  }
  if (!store_live(self) || to_bytes(args[0], &k))
    return NULL;
  if (to_bytes(args[1], &f)) {
    Py_XDECREF(k.keep);
    return NULL;
  }
  PyObject *r = fetch_value(self, &k, &f, fetch_hget, "hget");
  Py_XDECREF(k.keep);
  Py_XDECREF(f.keep);
  return r;
}

/* set(key, value, nx=False, xx=False) -> True, or None when NX / XX prevented it (redis-py). */
static PyObject *Store_set(StoreObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"name", "value", "nx", "xx", NULL};
  PyObject *ko, *vo;
  int nx = 0, xx = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|pp:set", kwlist, &ko, &vo, &nx, &xx))
    return NULL;
  argbuf_t k, v;
  if (!store_live(self) || to_bytes(ko, &k))
    return NULL;
  if (to_bytes(vo, &v)) {
    Py_XDECREF(k.keep);
    return NULL;
  }
  unsigned flags = (nx ? SHMD_KV_NX : 0u) | (xx ? SHMD_KV_XX : 0u);
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_kv_set(self->s, self->db, k.ptr, (size_t)k.len, v.ptr, (size_t)v.len, flags);
  Py_END_ALLOW_THREADS
  Py_XDECREF(k.keep);
  Py_XDECREF(v.keep);
  if (rc == 0)
    Py_RETURN_TRUE;
  if (rc == SHMD_EEXIST || rc == SHMD_ENOTFOUND)
    Py_RETURN_NONE;
  if (rc == SHMD_EINVAL && nx && xx) {
    PyErr_SetString(ResponseError, "ERR syntax error");
    return NULL;
  }
  return raise_status(rc, "set");
}

/* hset(key, field, value) -> 1 when the field is new, else 0. */
static PyObject *Store_hset(StoreObject *self, PyObject *const *args, Py_ssize_t nargs) {
  argbuf_t b[3];
  int n = 0;
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "hset(key, field, value)");
    return NULL;
  }
  if (!store_live(self))
    return NULL;
  for (; n < 3; n++)
    if (to_bytes(args[n], &b[n]))
      goto fail;
  int created = 0, rc;
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_kv_hset(self->s, self->db, b[0].ptr, (size_t)b[0].len, b[1].ptr, (size_t)b[1].len,
                    b[2].ptr, (size_t)b[2].len, &created);
  Py_END_ALLOW_THREADS
  for (int i = 0; i < 3; i++)
    Py_XDECREF(b[i].keep);
  if (rc == SHMD_EWRONGTYPE) {
    PyErr_SetString(ResponseError, "WRONGTYPE Operation against a key holding the wrong kind of value");
    return NULL;
  }
  if (rc)
    return raise_status(rc, "hset");
  return PyLong_FromLong(created);
fail:
  for (int i = 0; i < n; i++)
    Py_XDECREF(b[i].keep);
  return NULL;
}

/* zrank(key, member, reverse=False) -> int or None. */
static PyObject *Store_zrank(StoreObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"name", "value", "reverse", NULL};
  PyObject *ko, *mo;
  int reverse = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|p:zrank", kwlist, &ko, &mo, &reverse))
    return NULL;
  argbuf_t k, m;
  if (!store_live(self) || to_bytes(ko, &k))
    return NULL;
  if (to_bytes(mo, &m)) {
    Py_XDECREF(k.keep);
    return NULL;
  }
  uint64_t rank = 0;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_kv_zrank(self->s, self->db, k.ptr, (size_t)k.len, m.ptr, (size_t)m.len, reverse, &rank);
  Py_END_ALLOW_THREADS
  Py_XDECREF(k.keep);
  Py_XDECREF(m.keep);
  if (rc == SHMD_ENOTFOUND)
    Py_RETURN_NONE;
  if (rc == SHMD_EWRONGTYPE) {
    PyErr_SetString(ResponseError, "WRONGTYPE Operation against a key holding the wrong kind of value");
    return NULL;
  }
  if (rc)
    return raise_status(rc, "zrank");
  return PyLong_FromUnsignedLongLong(rank);
}

/* check(): the allocator's and the keyspace's invariant checkers; True or raises Error. */
static PyObject *Store_check(StoreObject *self, PyObject *Py_UNUSED(ignored)) {
  if (!store_live(self))
    return NULL;
  int rc;
  const char *what = "shmd_alloc_check";
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_alloc_check(self->s);
  if (rc == 0) {
    what = "shmd_kv_check";
    rc = shmd_kv_check(self->s);
  }
  Py_END_ALLOW_THREADS
  if (rc)
    return raise_status(rc, what);
  Py_RETURN_TRUE;
}

#define PUT(d, name, v)                                                                            \
  do {                                                                                             \
    PyObject *o_ = PyLong_FromUnsignedLongLong((unsigned long long)(v));                           \
    if (o_ == NULL || PyDict_SetItemString(d, name, o_)) {                                         \
      Py_XDECREF(o_);                                                                              \
      Py_DECREF(d);                                                                                \
      return NULL;                                                                                 \
    }                                                                                              \
    Py_DECREF(o_);                                                                                 \
  } while (0)

/* _info(): store facts, allocator totals and the database's key counts, as one dict. */
static PyObject *Store_info(StoreObject *self, PyObject *Py_UNUSED(ignored)) {
  if (!store_live(self))
    return NULL;
  shmd_store_info_t si;
  shmd_stats_t *st = PyMem_Malloc(sizeof *st);
  shmd_kv_info_t ki;
  if (st == NULL)
    return PyErr_NoMemory();
  int rc;
  const char *what = "shmd_store_info";
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_store_info(self->s, &si);
  if (rc == 0) {
    what = "shmd_stats";
    rc = shmd_stats(self->s, st);
  }
  if (rc == 0) {
    what = "shmd_kv_info";
    rc = shmd_kv_info(self->s, self->db, &ki);
  }
  Py_END_ALLOW_THREADS
  if (rc) {
    PyMem_Free(st);
    return raise_status(rc, what);
  }
  PyObject *d = PyDict_New();
  if (d == NULL) {
    PyMem_Free(st);
    return NULL;
  }
  uint64_t sb = st->store_bytes, ab = st->allocated_bytes, fb = st->free_bytes;
  PyMem_Free(st);
  PUT(d, "layout_major", si.layout_major);
  PUT(d, "layout_minor", si.layout_minor);
  PUT(d, "segments", si.segments);
  PUT(d, "lanes", si.lanes);
  PUT(d, "lanes_in_use", si.lanes_in_use);
  PUT(d, "roots", si.roots);
  PUT(d, "store_bytes", sb);
  PUT(d, "max_store_bytes", si.max_store_bytes);
  PUT(d, "allocated_bytes", ab);
  PUT(d, "free_bytes", fb);
  PUT(d, "recoveries", si.recoveries);
  PUT(d, "created_unix", si.created_unix);
  PUT(d, "db", self->db);
  PUT(d, "keys", ki.keys);
  PUT(d, "strings", ki.strings);
  PUT(d, "hashes", ki.hashes);
  PUT(d, "lists", ki.lists);
  PUT(d, "sets", ki.sets);
  PUT(d, "zsets", ki.zsets);
  PUT(d, "expires", ki.expires);
  return d;
}

static PyObject *Store_get_db(StoreObject *self, void *Py_UNUSED(c)) { return PyLong_FromUnsignedLong(self->db); }

static int Store_set_db(StoreObject *self, PyObject *v, void *Py_UNUSED(c)) {
  unsigned long db = v ? PyLong_AsUnsignedLong(v) : (unsigned long)-1;
  if (PyErr_Occurred())
    return -1;
  if (db >= SHMD_KV_DATABASES) {
    PyErr_Format(PyExc_ValueError, "shmdict: db must be 0..%u", SHMD_KV_DATABASES - 1);
    return -1;
  }
  self->db = (unsigned)db;
  return 0;
}

static PyObject *Store_get_name(StoreObject *self, void *Py_UNUSED(c)) {
  if (!store_live(self))
    return NULL;
  return PyUnicode_FromString(shmd_store_name(self->s));
}

static PyObject *Store_get_closed(StoreObject *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->s == NULL); }

static PyMethodDef Store_methods[] = {
    {"execute", (PyCFunction)Store_execute, METH_VARARGS,
     "execute(*args): runs one command (e.g. 'ZRANGE', 'top', 0, 9) and returns its reply as bytes, "
     "int, list or None; an error reply raises ResponseError."},
    {"get", (PyCFunction)Store_get, METH_O, "get(key) -> bytes or None"},
    {"set", (PyCFunction)(void (*)(void))Store_set, METH_VARARGS | METH_KEYWORDS,
     "set(key, value, nx=False, xx=False) -> True, or None when nx/xx prevented it"},
    {"hget", (PyCFunction)(void (*)(void))Store_hget, METH_FASTCALL, "hget(key, field) -> bytes or None"},
    {"hset", (PyCFunction)(void (*)(void))Store_hset, METH_FASTCALL,
     "hset(key, field, value) -> 1 if the field is new, else 0"},
    {"zrank", (PyCFunction)(void (*)(void))Store_zrank, METH_VARARGS | METH_KEYWORDS,
     "zrank(key, member, reverse=False) -> int or None"},
    {"check", (PyCFunction)Store_check, METH_NOARGS,
     "check(): runs the allocator's and the keyspace's checkers; True, or raises Error"},
    {"_info", (PyCFunction)Store_info, METH_NOARGS, "_info() -> dict of store, allocator and key counts"},
    {"close", (PyCFunction)Store_close, METH_NOARGS, "close(): releases the handle (data stays)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Store_getset[] = {
    {"db", (getter)Store_get_db, (setter)Store_set_db, "the database of this handle (0..15)", NULL},
    {"name", (getter)Store_get_name, NULL, "the store's name", NULL},
    {"closed", (getter)Store_get_closed, NULL, "True after close()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmdict_core.Store",
    .tp_basicsize = sizeof(StoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Store(name, dir=None, db=0, create=True, ...): an open shmdict store.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Store_init,
    .tp_dealloc = (destructor)Store_dealloc,
    .tp_methods = Store_methods,
    .tp_getset = Store_getset,
};

static PyObject *core_drop(PyObject *Py_UNUSED(m), PyObject *args) {
  const char *name, *dir = NULL;
  if (!PyArg_ParseTuple(args, "s|z:drop", &name, &dir))
    return NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = shmd_drop(name, dir);
  Py_END_ALLOW_THREADS
  if (rc == SHMD_ENOENT)
    Py_RETURN_FALSE;
  if (rc)
    return raise_status(rc, "shmd_drop");
  Py_RETURN_TRUE;
}

static PyMethodDef core_methods[] = {
    {"drop", core_drop, METH_VARARGS, "drop(name, dir=None): removes a store's files; False if absent"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "shmdict_core", "The C part of the shmdict module (see shmdict).", -1,
    core_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_shmdict_core(void) {
  if (PyType_Ready(&StoreType) < 0)
    return NULL;
  PyObject *m = PyModule_Create(&core_module);
  if (m == NULL)
    return NULL;
  Error = PyErr_NewExceptionWithDoc("shmdict.Error",
                                    "A failure of the shmdict library: args are (message, status, "
                                    "status name), e.g. ('shmd_open: ...', -15, 'ENOENT').",
                                    NULL, NULL);
  ResponseError = PyErr_NewExceptionWithDoc("shmdict.ResponseError",
                                            "An error reply of a command, with Redis's text.", Error,
                                            NULL);
  if (Error == NULL || ResponseError == NULL || PyModule_AddObjectRef(m, "Error", Error) < 0 ||
      PyModule_AddObjectRef(m, "ResponseError", ResponseError) < 0 ||
      PyModule_AddObjectRef(m, "Store", (PyObject *)&StoreType) < 0 ||
      PyModule_AddIntConstant(m, "DATABASES", SHMD_KV_DATABASES) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
