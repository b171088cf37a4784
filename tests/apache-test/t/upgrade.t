# The upgrade= parameter of ProxyPass: a custom protocol, ANY and NONE, and the default
# (WebSocket only; anything else, h2c included, gets 426 and never reaches the backend).
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/lib";
use Apache::Test qw(-withtestmore);
use WstTest;

plan tests => 11, need_module qw(proxy proxy_wstunnel);

sub raw_echo_ok {
    my ($s, $what) = @_;
    my $msg = "raw bytes for $what\n";
    print $s $msg;
    $s->flush;
    my $got = '';
    while (length $got < length $msg) {
        my $n = sysread($s, my $buf, 4096) or last;
        $got .= $buf;
    }
    return $got eq $msg;
}

my ($code, $s) = raw_upgrade('off_ws', '/ws2/x', 'h2c');
is($code, 426, 'default alias refuses h2c with 426');
($code) = raw_upgrade('off_ws', '/ws2/x', 'foo');
is($code, 426, 'default alias refuses another protocol with 426');
($code) = raw_upgrade('off_ws', '/ws2/x', undef);
ok($code != 101, "default alias does not tunnel without Upgrade (got $code)");

($code, $s) = raw_upgrade('off_ws', '/proto-foo/a', 'foo');
is($code, 101, 'upgrade=foo tunnels foo');
ok(raw_echo_ok($s, 'foo'), 'upgrade=foo relays bytes both ways');
($code) = raw_upgrade('off_ws', '/proto-foo/b', 'websocket');
is($code, 426, 'upgrade=foo refuses websocket');

($code, $s) = raw_upgrade('off_ws', '/proto-any/c', 'chat');
is($code, 101, 'upgrade=ANY tunnels any protocol');
ok(raw_echo_ok($s, 'ANY'), 'upgrade=ANY relays bytes both ways');
($code) = raw_upgrade('off_ws', '/proto-any/d', 'h2c');
is($code, 426, 'upgrade=ANY still refuses h2c');

($code, $s) = raw_upgrade('off_ws', '/proto-none/e', 'whatever');
is($code, 101, 'upgrade=NONE ignores what the client asked (the backend is asked for WebSocket)');
# As stock: a ProxyPass alias to ws:// is only taken by requests that carry an Upgrade
# header (decided before the worker and its upgrade= are known), NONE or not.
($code) = raw_upgrade('off_ws', '/proto-none/f', undef);
isnt($code, 101, "upgrade=NONE alias without any Upgrade header is not tunnelled (got $code)");
