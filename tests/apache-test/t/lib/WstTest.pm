package WstTest;
# Helpers for the Apache::Test suite: WebSocket clients (AnyEvent::WebSocket::Client) on the
# virtual hosts Apache::Test assigned ports to, raw HTTP for exact handshakes, and the
# server's error_log.
use strict;
use warnings FATAL => 'all';
use Apache::Test ();
use Apache::TestRequest ();
use AnyEvent;
use AnyEvent::WebSocket::Client;
use IO::Socket::INET;
use Exporter 'import';
our @EXPORT = qw(url_for ws_open ws_next ws_echo raw_upgrade error_log);

my $TIMEOUT = 30;

# A watchdog per test file: a test that waits for bytes that never come fails, never hangs.
$SIG{ALRM} = sub { die "test file timed out after 180 s\n" };
alarm 180;

# ws://host:port/path (or wss://) for one of extra.conf.in's virtual hosts.
sub url_for {
    my ($vhost, $path, $scheme) = @_;
    Apache::TestRequest::module($vhost);
    my $hostport = Apache::TestRequest::hostport();
    Apache::TestRequest::module('default');
    $hostport =~ s/^[^:]+:/localhost:/;
    return ($scheme // 'ws') . "://$hostport$path";
}

# Opens a WebSocket; returns the connection, or undef and the error.
sub ws_open {
    my ($url) = @_;
    my $client = AnyEvent::WebSocket::Client->new(
        timeout          => $TIMEOUT,
        max_payload_size => 16 << 20,
        ($url =~ /^wss:/ ? (ssl_ca_file => $ENV{WST_CA}) : ()),
    );
    my $conn = eval { $client->connect($url)->recv };
    return ($conn, $@);
}

# The next message's body (undef on timeout or close).
sub ws_next {
    my ($conn) = @_;
    my $cv = AE::cv;
    $conn->on(next_message => sub { $cv->send($_[1]->body) });
    $conn->on(finish => sub { $cv->send(undef) });
    my $t = AE::timer $TIMEOUT, 0, sub { $cv->send(undef) };
    return $cv->recv;
}

# Sends one message and returns its echo.
sub ws_echo {
    my ($conn, $body) = @_;
    $conn->send(AnyEvent::WebSocket::Message->new(body => $body, opcode => ($body =~ /[^\x20-\x7e]/ ? 2 : 1)));
    return ws_next($conn);
}

# Sends a GET with `Upgrade: $proto` (none when undef) on $vhost; returns the status and
# the socket (for raw bytes after a 101).
sub raw_upgrade {
    my ($vhost, $path, $proto) = @_;
    Apache::TestRequest::module($vhost);
    my $hostport = Apache::TestRequest::hostport();
    Apache::TestRequest::module('default');
    my $s = IO::Socket::INET->new(PeerAddr => $hostport, Timeout => $TIMEOUT) or die "connect $hostport: $!";
    my $up = defined $proto ? "Upgrade: $proto\r\nConnection: Upgrade\r\n" : "";
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n${up}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           . "Sec-WebSocket-Version: 13\r\n\r\n";
    my $status = <$s> // '';
    while (my $line = <$s>) { last if $line eq "\r\n" }
    my ($code) = $status =~ m{^HTTP/1\.1 (\d{3})};
    return ($code // 0, $s);
}

sub error_log {
    my $file = Apache::Test::vars('t_logs') . '/error_log';
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    return <$fh>;
}

1;
