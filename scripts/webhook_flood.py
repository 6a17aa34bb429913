#!/usr/bin/env python3
"""Unauthenticated load against a running `serve`, measured from outside (issue 20).

    host-harness serve --port PORT --secrets SECRETS &   # SECRETS with flow/api-token "tok"
    python3 scripts/webhook_flood.py PORT PID trickle    # 1,500 idle + 1,100 trickling webhooks:
                                                         #   latency of GET /flows/{id} meanwhile
    python3 scripts/webhook_flood.py PORT PID big        # 1,024 concurrent unsigned 30 MiB webhook
                                                         #   bodies, declared then chunked: peak RSS

Loopback only; stops by itself.
"""
import socket, sys, time, threading, urllib.request, os
port=int(sys.argv[1]); pid=int(sys.argv[2]); mode=sys.argv[3]
def api():
    t=time.time()
    req=urllib.request.Request(f"http://127.0.0.1:{port}/flows/nobody", headers={"authorization":"Bearer tok"})
    try: urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e: assert e.code==404
    return time.time()-t
def hwm():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM"): return l.split()[1]
socks=[]
if mode=="trickle":
    for i in range(1500):
        s=socket.create_connection(("127.0.0.1",port)); socks.append(s)
    for i in range(1100):
        s=socket.create_connection(("127.0.0.1",port)); s.sendall(b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{"); socks.append(s)
    lat=[api() for _ in range(20)]
    print("api latency under 1,500 idle + 1,100 trickling: max %.3f s, median %.3f s"%(max(lat), sorted(lat)[10]))
else:
    body=b"a"*(30<<20)
    def big(declared):
        try:
            s=socket.create_connection(("127.0.0.1",port))
            if declared:
                s.sendall(b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"%len(body)); s.sendall(body)
            else:
                s.sendall(b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(30): s.sendall(b"100000\r\n"+body[:1<<20]+b"\r\n")
            s.recv(100)
        except Exception as e: pass
    for declared in (True, False):
        ts=[threading.Thread(target=big,args=(declared,)) for _ in range(1024)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print("after 1,024 concurrent 30 MiB unsigned bodies (%s): serve VmHWM %s kB, api %.3f s"%("declared" if declared else "chunked", hwm(), api()))
