#include <shmring.h>
#include <stdio.h>
int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/hello-c";
    shmring_consumer *consumer = NULL;
    shmring_producer *producer = NULL; /* normally in another process */
    char buf[64]; size_t len = 0;
    int rc = shmring_consumer_create(name, NULL, &consumer); /* NULL: default options */
    if (rc == SHMRING_OK) rc = shmring_producer_open(name, NULL, &producer);
    if (rc == SHMRING_OK) rc = shmring_send(producer, "hello from C", 12);
    if (rc == SHMRING_OK) rc = shmring_recv(consumer, buf, sizeof buf, &len);
    if (rc == SHMRING_OK) printf("%.*s\n", (int)len, buf);
    else fprintf(stderr, "%s: %s\n", shmring_strerror(rc), shmring_last_error());
    shmring_producer_free(producer);
    shmring_consumer_free(consumer); /* the creator removes the segment */
    return rc != SHMRING_OK;
}
