# install.cmake — run by `cmake --install` (see systemd/CMakeLists.txt for the layout rule).
# Reads the SBERTD_* variables set just before it in the same cmake_install.cmake.

set(_prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" _prefix "${_prefix}")
if(_prefix STREQUAL "/usr")
  set(_unitdir "${SBERTD_PKG_UNITDIR}")
  set(_sysusersdir "${SBERTD_PKG_SYSUSERSDIR}")
  set(_tmpfilesdir "${SBERTD_PKG_TMPFILESDIR}")
  set(_confdir "/etc/sbertd")
else()
  set(_unitdir "${_prefix}/lib/systemd/system")
  set(_sysusersdir "${_prefix}/lib/sysusers.d")
  set(_tmpfilesdir "${_prefix}/lib/tmpfiles.d")
  set(_confdir "${_prefix}/etc/sbertd")
endif()

# Names used inside sbertd.service.in and sbertd-backup.service.in.
set(SBERTD_SBINDIR "${_prefix}/${SBERTD_SBINDIR_REL}")
set(SBERTD_CONFDIR "${_confdir}")
set(SBERTD_BINDIR "${_prefix}/${SBERTD_BINDIR_REL}")
configure_file("${SBERTD_SYSTEMD_SRC}/sbertd.service.in" "${SBERTD_SYSTEMD_BIN}/sbertd.service" @ONLY)
configure_file("${SBERTD_SYSTEMD_SRC}/sbertd-backup.service.in"
               "${SBERTD_SYSTEMD_BIN}/sbertd-backup.service" @ONLY)
file(INSTALL DESTINATION "${_unitdir}" TYPE FILE
     FILES "${SBERTD_SYSTEMD_BIN}/sbertd.service" "${SBERTD_SYSTEMD_BIN}/sbertd-backup.service"
           "${SBERTD_SYSTEMD_SRC}/sbertd-backup.timer" "${SBERTD_SYSTEMD_SRC}/sbertd.socket")

# sysusers.d and tmpfiles.d files are named after the package.
file(INSTALL DESTINATION "${_sysusersdir}" TYPE FILE
     FILES "${SBERTD_SYSTEMD_SRC}/sbertd.sysusers" RENAME sbertd.conf)
file(INSTALL DESTINATION "${_tmpfilesdir}" TYPE FILE
     FILES "${SBERTD_SYSTEMD_SRC}/sbertd.tmpfiles" RENAME sbertd.conf)

if(NOT EXISTS "${SBERTD_CONF_EXAMPLE}")
  message(FATAL_ERROR "sbertd: ${SBERTD_CONF_EXAMPLE} is missing; cannot install the default sbertd.conf")
endif()
set(_conf "$ENV{DESTDIR}${_confdir}/sbertd.conf")
set(_conf_name sbertd.conf)
if(EXISTS "${_conf}")
  file(SHA256 "${_conf}" _old)
  file(SHA256 "${SBERTD_CONF_EXAMPLE}" _new)
  if(NOT _old STREQUAL _new)
    # Keep the administrator's settings; the new commented defaults go beside them.
    set(_conf_name sbertd.conf.dist)
    message(STATUS "sbertd: keeping existing ${_conf}; new defaults installed as sbertd.conf.dist")
  endif()
endif()
file(INSTALL DESTINATION "${_confdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${SBERTD_CONF_EXAMPLE}" RENAME "${_conf_name}")
