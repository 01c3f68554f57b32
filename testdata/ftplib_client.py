#!/usr/bin/env python3
"""Drives ftpsd with Python's ftplib.FTP_TLS, as end-to-end tests need.

usage: ftplib_client.py roundtrip HOST PORT USER PASS pasv|epsv [noreuse]
       ftplib_client.py mixed HOST PORT USER PASS COUNT
       ftplib_client.py asciisize HOST PORT USER PASS

Data connections resume the control connection's TLS session (ReusingFTP_TLS,
the usual subclass), as ftpsd requires by default; "noreuse" uses plain
FTP_TLS, which does a full handshake on every data connection.
"""
import ftplib
import hashlib
import io
import os
import socket
import ssl
import sys


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def connect(host, port, user, password, mode, reuse=True):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    cls = ReusingFTP_TLS if reuse else ftplib.FTP_TLS
    ftp = cls(context=ctx, timeout=15)
    ftp.connect(host, port)
    ftp.login(user, password)
    ftp.prot_p()
    if mode == "epsv":
        # ftplib picks EPSV for anything but AF_INET.
        ftp.af = socket.AF_INET6
    elif ftp.af != socket.AF_INET:
        sys.exit("PASV needs an IPv4 control connection")
    return ftp


def roundtrip(host, port, user, password, mode, reuse=True):
    ftp = connect(host, port, user, password, mode, reuse)
    payload = os.urandom(700_000)
    name = "ftplib-%s.bin" % mode
    ftp.storbinary("STOR " + name, io.BytesIO(payload))
    out = io.BytesIO()
    ftp.retrbinary("RETR " + name, out.write)
    if hashlib.sha256(out.getvalue()).digest() != hashlib.sha256(payload).digest():
        sys.exit("downloaded data differs")
    if name not in ftp.nlst():
        sys.exit("NLST lacks the upload")
    lines = []
    ftp.retrlines("LIST", lines.append)
    if not any(name in l for l in lines):
        sys.exit("LIST lacks the upload")
    ftp.delete(name)
    ftp.quit()
    print("roundtrip ok", mode)


def mixed(host, port, user, password, count):
    """count transfers: completed, cut off after the first block, and never connected."""
    ftp = connect(host, port, user, password, "epsv")
    done = cut = never = 0
    for i in range(count):
        kind = i % 4
        if kind in (0, 1):
            out = io.BytesIO()
            ftp.retrbinary("RETR mixed.bin", out.write)
            done += 1
        elif kind == 2:
            conn = ftp.transfercmd("RETR mixed.bin")
            conn.recv(1024)
            conn.close()  # no TLS shutdown: an abrupt end
            try:
                ftp.voidresp()  # 226 if the data was already sent, else 426
            except (ftplib.error_temp, ftplib.error_perm):
                pass
            cut += 1
        else:
            ftp.sendcmd("EPSV")  # a data port the client never uses
            never += 1
    ftp.quit()
    print("mixed ok done=%d cut=%d never=%d" % (done, cut, never))


def asciisize(host, port, user, password):
    """nlst() leaves the session in TYPE A; size() must still work there."""
    ftp = connect(host, port, user, password, "pasv")
    ftp.storbinary("STOR sized.txt", io.BytesIO(b"line one\nline two\n"))
    names = ftp.nlst()  # ftplib sends TYPE A for it
    sizes = {n: ftp.size(n) for n in names}
    if sizes.get("sized.txt") != 18:
        sys.exit("SIZE in ASCII mode: %r" % sizes)
    ftp.quit()
    print("asciisize ok", sizes["sized.txt"])


if __name__ == "__main__":
    cmd, host, port, user, password = sys.argv[1:6]
    if cmd == "roundtrip":
        roundtrip(host, int(port), user, password, sys.argv[6], sys.argv[7:8] != ["noreuse"])
    elif cmd == "asciisize":
        asciisize(host, int(port), user, password)
    elif cmd == "mixed":
        mixed(host, int(port), user, password, int(sys.argv[6]))
    else:
        sys.exit("unknown command " + cmd)
