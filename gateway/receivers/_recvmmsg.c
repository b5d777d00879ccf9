/* Batch receive for the UDP receivers: one recvmmsg(2) call drains up to a batch of datagrams.
 *
 * Strategy: the socket is non-blocking and readable (the event loop said so); one call moves up
 * to `max_msgs` datagrams into a buffer kept between calls, and each becomes the
 * (payload, peer, received_at) tuple the pipeline's intake holds, appended to the caller's
 * list. The peer is what socket.recvfrom gives: (host, port) for IPv4, (host, port, flowinfo,
 * scope_id) for IPv6. With SO_RXQ_OVFL set on the socket, the kernel's count of datagrams it
 * dropped on this socket comes with every datagram; the newest one seen is returned.
 *
 * gateway/receivers/udp.py has the pure-Python twin of this function and uses it where this
 * module was not built, or when TRAPGATE_PURE is set.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SO_RXQ_OVFL
#define SO_RXQ_OVFL 40
#endif

#define MAX_BATCH 1024

static char *buffer = NULL;            /* max_msgs * max_size bytes, kept between calls */
static size_t buffer_size = 0;
static struct mmsghdr headers[MAX_BATCH];
static struct iovec vectors[MAX_BATCH];
static struct sockaddr_storage names[MAX_BATCH];
static char controls[MAX_BATCH][CMSG_SPACE(sizeof(uint32_t))];

static PyObject *peer_of(const struct sockaddr_storage *name) {
    char host[INET6_ADDRSTRLEN];
    if (name->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)name;
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    if (name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)name;
        if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(v6->sin6_port), ntohl(v6->sin6_flowinfo),
                             v6->sin6_scope_id);
    }
    PyErr_SetString(PyExc_OSError, "a datagram from an address family other than IPv4 and IPv6");
    return NULL;
}

PyDoc_STRVAR(recv_batch_doc,
"recv_batch(fd, max_msgs, max_size, received_at, into) -> (count, kernel_drops)\n\n"
"Receive up to max_msgs datagrams (each cut at max_size bytes) from the non-blocking socket\n"
"fd in one recvmmsg call, appending (payload, peer, received_at) to the list into. Returns\n"
"how many were appended (0 when none was waiting) and the socket's kernel drop count as the\n"
"newest datagram carried it (SO_RXQ_OVFL), or -1 when none carried it.");

static PyObject *recv_batch(PyObject *Py_UNUSED(self), PyObject *args) {
    int fd, max_msgs;
    Py_ssize_t max_size;
    PyObject *received_at, *into;
    if (!PyArg_ParseTuple(args, "iinOO!", &fd, &max_msgs, &max_size, &received_at, &PyList_Type, &into))
        return NULL;
    if (max_msgs < 1 || max_msgs > MAX_BATCH || max_size < 1) {
        PyErr_Format(PyExc_ValueError, "max_msgs must be 1 to %d and max_size positive", MAX_BATCH);
        return NULL;
    }
    size_t wanted = (size_t)max_msgs * (size_t)max_size;
    if (wanted > buffer_size) {
        char *grown = realloc(buffer, wanted);
        if (grown == NULL)
            return PyErr_NoMemory();
        buffer = grown;
        buffer_size = wanted;
    }
    for (int i = 0; i < max_msgs; i++) {
        vectors[i].iov_base = buffer + (size_t)i * (size_t)max_size;
        vectors[i].iov_len = (size_t)max_size;
        memset(&headers[i].msg_hdr, 0, sizeof headers[i].msg_hdr);
        headers[i].msg_hdr.msg_name = &names[i];
        headers[i].msg_hdr.msg_namelen = sizeof names[i];
        headers[i].msg_hdr.msg_iov = &vectors[i];
        headers[i].msg_hdr.msg_iovlen = 1;
        headers[i].msg_hdr.msg_control = controls[i];
        headers[i].msg_hdr.msg_controllen = sizeof controls[i];
    }
    int got;
    Py_BEGIN_ALLOW_THREADS
    do {
        got = recvmmsg(fd, headers, (unsigned int)max_msgs, MSG_DONTWAIT, NULL);
    } while (got < 0 && errno == EINTR);
    Py_END_ALLOW_THREADS
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return Py_BuildValue("(iL)", 0, (long long)-1);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    long long drops = -1;
    for (int i = 0; i < got; i++) {
        struct msghdr *header = &headers[i].msg_hdr;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(header); c != NULL; c = CMSG_NXTHDR(header, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                uint32_t count;
                memcpy(&count, CMSG_DATA(c), sizeof count);
                drops = count;
            }
        }
        size_t size = headers[i].msg_len < (unsigned int)max_size ? headers[i].msg_len : (size_t)max_size;
        PyObject *payload = PyBytes_FromStringAndSize(vectors[i].iov_base, (Py_ssize_t)size);
        if (payload == NULL)
            return NULL;
        PyObject *peer = peer_of(&names[i]);
        if (peer == NULL) {
            Py_DECREF(payload);
            return NULL;
        }
        PyObject *item = PyTuple_Pack(3, payload, peer, received_at);
        Py_DECREF(payload);
        Py_DECREF(peer);
        if (item == NULL)
            return NULL;
        int failed = PyList_Append(into, item);
        Py_DECREF(item);
        if (failed)
            return NULL;
    }
    return Py_BuildValue("(iL)", got, drops);
}

static PyMethodDef methods[] = {
    {"recv_batch", recv_batch, METH_VARARGS, recv_batch_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_recvmmsg",
    .m_doc = "recvmmsg(2) for the UDP receivers: one system call drains a batch (see recv_batch).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__recvmmsg(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
