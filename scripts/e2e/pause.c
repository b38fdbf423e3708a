/* The pod sandbox ("pause") image's program: holds the pod's namespaces, reaps orphans, and
 * exits on SIGTERM/SIGINT. Built statically by scripts/e2e-kubernetes.sh (no registry to pull
 * registry.k8s.io/pause from). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGTERM, quit);
    signal(SIGINT, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
