#!/bin/sh
# Standalone ZooKeeper, configured like the official image's defaults.
set -e
mkdir -p /conf /data /datalog
cat > /conf/zoo.cfg <<CFG
tickTime=2000
initLimit=5
syncLimit=2
dataDir=/data
dataLogDir=/datalog
clientPort=2181
admin.enableServer=false
4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr}
CFG
exec java -Xmx256m -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg
