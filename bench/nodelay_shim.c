/* Diagnostic only (bench/send.sh): an LD_PRELOAD shim that sets TCP_NODELAY on every TCP
 * socket the program connects, to show how much of utskick's send time is Nagle's
 * algorithm holding back the 5-byte "\r\n.\r\n" that lettre writes after the message body
 * until the receiver's delayed ACK (about 40 ms on Linux) comes.
 *
 *   cc -shared -fPIC -O2 -o nodelay_shim.so bench/nodelay_shim.c -ldl
 *   LD_PRELOAD=./nodelay_shim.so utskick send --yes
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) {
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    }
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int type = 0;
        socklen_t tl = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
    }
    return real_connect(fd, addr, len);
}
